"""The lab beside the product: the traffic simulator (``sim``), detection-quality evaluation
(``evaluation``) and the benchmark (``bench``). Nothing here runs in production; its extra
dependencies come with ``pip install 'llm-distill-detector[lab]'``."""

"""Programs built on the pipeline, not steps of it: the sidecar ``tap``, the ``pager``, the
``demo``, and the Grafana ``dashboard`` generator. The worker itself is ``app``/``service``."""

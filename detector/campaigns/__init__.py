"""The campaign stage, group first (issue 30; design in ``docs/design/campaign-detection.md``).

Pure so far: ``evidence`` (what an account shares with others, by kind and family),
``weights`` (how much a shared value says, from how many accounts share it) and
``grouping`` (groups as a shared profile no single value or family can dominate, so a chain
of single shared values never makes a group). ``detector_lab.evaluation.groups`` runs them
over a whole simulated draw to choose their rules on the ``tune`` suite; the streaming
stage with its Redis shards comes next and replaces ``detectors.campaign``.
"""

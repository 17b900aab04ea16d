"""The campaign stage, group first (issue 30; design in ``docs/design/campaign-detection.md``).

Pure: ``evidence`` (what an account shares with others, by kind and family), ``weights``
(how much a shared value says, from how many accounts share it), ``grouping`` (groups as a
shared profile no single value or family can dominate, so a chain of single shared values
never makes a group) and ``judge`` (a group against the background). ``step`` runs them per
batch through ``io.group_store``; ``detector_lab.evaluation.groups`` runs them over a whole
simulated draw in hindsight, where their rules were chosen on the ``tune`` suite.
"""

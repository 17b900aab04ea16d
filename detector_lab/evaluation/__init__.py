"""Detection quality: alerts scored against the simulator's labels, as numbers, a report and plots."""

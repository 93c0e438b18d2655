"""The node process: settings, app assembly, roles, workers, serving and the multi-node supervisor."""

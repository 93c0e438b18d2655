"""[H] The holder side of federated analysis: tasks in, disclosure-checked outputs out."""

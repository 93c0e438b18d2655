"""[U] The data user side of federated analysis: runs, fan-out to holders, combine."""

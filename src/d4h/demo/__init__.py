"""The end-to-end demo: four participants on loopback and a scenario of named, timed steps."""

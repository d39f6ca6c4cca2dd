"""Fallwerk engine: parsing, deploying and running BPMN models. Never imports Flask."""

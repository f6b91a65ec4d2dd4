"""The dcat command line: a typer app that parses, calls pipelines, renders with rich."""

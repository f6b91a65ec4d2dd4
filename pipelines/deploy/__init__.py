"""Deploying a trained target alone: export (`dcat export`) and streaming prediction (`dcat predict RUN - --stream`)."""

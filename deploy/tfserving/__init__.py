"""TF Serving's configuration files for an export (`python -m deploy.tfserving.config`) and the
committed defaults the Dockerfile copies."""

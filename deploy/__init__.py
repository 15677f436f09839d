"""Deployment tooling: the TF Serving configuration writer (`deploy.tfserving.config`) beside the
Kubernetes manifests (`deploy/kubernetes`) and Slurm scripts (`deploy/slurm`)."""

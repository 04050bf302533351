"""Deployment checks: the kustomize manifests of k8s/ and the Dockerfile, offline."""

"""Typed models shared by the operator, the sidecar and the command line."""

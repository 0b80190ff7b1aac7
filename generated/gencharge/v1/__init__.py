"""Package gencharge.v1: generated from protos/gencharge/v1 by tools/generate.py. Do not edit."""

"""Package gencharge_client.v1: the GenCharge contract. Generated from protos/gencharge/v1 by tools/gen_pyclient.py. Do not edit."""

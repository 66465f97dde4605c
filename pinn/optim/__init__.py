"""Optimizers and loss balancing: SOAP (single and batched over networks and runs), any
optimizer by import path (one instance per run), the balancers (GN, LRA, the protocol)."""

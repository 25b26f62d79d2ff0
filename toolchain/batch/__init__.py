"""Batch enrollment and recognition of many photos on a Ray cluster."""

"""envleads.ops"""

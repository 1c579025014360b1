"""envleads.models"""

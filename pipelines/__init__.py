"""envleads.pipelines"""

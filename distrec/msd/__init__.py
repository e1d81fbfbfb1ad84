"""MSD: LLM knowledge (teacher) distilled into a small student used inside a CTR model."""

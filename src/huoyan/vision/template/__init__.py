"""Golden-template comparison: registration, tolerance, comparison, classification.

``detector.TemplateComparison`` is the ``template`` detector kind; ``pairs`` reads
template/test pairs (DeepPCB's layout, or a CSV) with their annotations.
"""

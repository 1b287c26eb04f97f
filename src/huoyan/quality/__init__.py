"""Quality analytics: control charts, run rules, capability and drift of the model's view.

A plain library (numbers in, numbers out, no web or database code): ``charts`` computes
the statistic, centre line and limits of each chart; ``rules`` tests a chart against
the Western Electric and Nelson run rules; ``capability`` gives Cp/Cpk/Pp/Ppk with
confidence intervals; ``drift`` compares recent scores with a model's calibration.
"""

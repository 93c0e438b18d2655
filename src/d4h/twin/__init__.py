"""Digital twins for diabetes: the UVA/Padova T1D model, CGM metrics and a T2D complication microsimulation.

Everything here is a pure computation with no I/O beyond parsing rows the caller supplies. Outputs are research
estimates: the T1D virtual patients are population (not personalised) twins, and the T2D equations were derived in
UK and US trial cohorts and are not recalibrated for other populations.
"""

"""The measurements of a token cloud: geometry (norms, cosines, volume), the logit lens, the
intrinsic-dimension estimators through idest, and analysis.py joining them into rows."""

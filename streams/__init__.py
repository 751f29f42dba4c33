"""The Faust application: normalize, join, detect, metrics, alerts."""

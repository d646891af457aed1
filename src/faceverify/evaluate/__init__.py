"""Evaluation: verification metrics, identification, reports and calibration."""

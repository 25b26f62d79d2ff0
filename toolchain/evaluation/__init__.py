"""Evaluation: labelled sets, identification and pair protocols, threshold calibration and its
out-of-sample check (leave one set out), the crop study and its peer (face_recognition), and
their reports."""

"""Evaluation: labelled sets, identification and pair protocols, threshold calibration,
the crop study and its peer (face_recognition), and their reports."""

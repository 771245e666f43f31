"""Evaluation: `strl eval` on the fixed eval suite or a file of questions (`evaluate`), what
it writes (`report`), and `strl score` of predictions against a sample file (`scoring`)."""

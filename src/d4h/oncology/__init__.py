"""Oncology tumour-board support: 'patients like this' across holders and chemotherapy toxicity (CTCAE, CARG)."""

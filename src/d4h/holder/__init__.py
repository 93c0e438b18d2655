"""Health data at the holder: FHIR R4 to OMOP CDM 5.4, pseudonymisation, opt-out hook, synthetic cohorts."""

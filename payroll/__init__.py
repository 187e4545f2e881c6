"""Monthly payroll batch jobs: prepare, export, settle (the aggregates live in domain/)."""

"""absl command-line scripts of the export package."""

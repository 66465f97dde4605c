"""After training: error fields against a reference, the NTK analysis, statistics over
seeds, the coupling claim as a test, the suite report, result files and the results page."""

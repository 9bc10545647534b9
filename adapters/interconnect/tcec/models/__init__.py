"""The business objects of every T/CEC 102 interface (docs/interconnect.md; the note's A.6 and A.7)."""

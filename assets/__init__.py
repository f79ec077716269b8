"""The data files SignLens ships: configs, glossaries, WLASL metadata, sample clips.

A package only so that a non-editable install (`pip install .`) carries them beside
`engine/`, where `engine.project_path("assets/...")` finds them from any directory.
"""

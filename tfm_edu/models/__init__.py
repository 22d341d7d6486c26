"""The course's models, each built from `tfm_edu.layers`."""

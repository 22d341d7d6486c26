"""Tools for the teacher who runs a class, apart from the learner-facing chapters.

- `tfm_edu.teacher.student_copies`: `python -m tfm_edu.teacher.student_copies notebooks student`
  (`make student`) writes copies of the notebooks without their solutions; its docstring
  describes the exercise convention every chapter follows.
"""

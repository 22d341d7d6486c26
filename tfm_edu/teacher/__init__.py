"""Tools for the teacher who runs a class, apart from the learner-facing chapters.

- `tfm_edu.teacher.student_copies`: `python -m tfm_edu.teacher.student_copies notebooks student`
  (`make student`) writes copies of the notebooks without their solutions; its docstring
  describes the exercise convention every chapter follows.
- `tfm_edu.teacher.assignments`: `python -m tfm_edu.teacher.assignments notebooks assignments`
  (`make assignments`) writes an nbgrader course directory, every chapter an assignment whose
  checks nbgrader autogrades (1 point per exercise).
- `tfm_edu.teacher.hub`: `python -m tfm_edu.teacher.hub --state hub` (`make hub`) runs a
  JupyterHub for a class on this machine: accounts with passwords the teacher authorizes, and a
  JupyterLab per learner on their own copies of the chapters.
- `tfm_edu.teacher.classload`: `python -m tfm_edu.teacher.classload --state hub --learners 8`
  makes N learners run a chapter at once through that hub and reports time, CPU and memory per
  learner: what sizing a machine for a class needs.
- `tfm_edu.teacher.collect`: `python -m tfm_edu.teacher.collect 01` copies every hub learner's
  chapter 01 into the nbgrader course's `submitted/`, ready for `nbgrader autograde 01`.
"""

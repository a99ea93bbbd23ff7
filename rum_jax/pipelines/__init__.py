"""Pipelines: the runs behind the command lines, each reading and writing a work directory.

  training       original models (train.py, mode train)
  memorization   Feldman-Zhang estimates and one-run proxies (train.py, modes memorization/proxies)
  unlearning     original -> forget set -> retrain reference -> a method -> metrics -> evaluation (unlearn.py)
  evaluation     accuracies, attacks, ToW of finished unlearning runs (evaluate.py on a work directory)
  audit          forgetting quality: the NeurIPS 2023 challenge score and U-LiRA from banks of models
                 (evaluate.py, mode audit)
  study          the RUM paper's study over methods and forget sets (evaluate.py with a study config)
  continual      learning and unlearning task after task (continual.py)

A pipeline imports the library and the pipelines listed above it, never one below it and
never a command; it neither validates the config nor locks the work directory: its command
has done both.
"""

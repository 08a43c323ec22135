"""`tandem train planner`: post-train a `hawkeye` planner with GRPO (TRL), as HAWKEYE did.

The planner samples plans for its own plan prompt; the alias's expander writes each answer
through the policy's code path; the reward is the task's grader on that answer minus a squared
penalty on the plan's length. torch, transformers, trl, peft and matplotlib are imported only
inside the command.
"""

"""The robot bridge: a policy on an accelerator drives a robot served over the network (README, "WidowX")."""

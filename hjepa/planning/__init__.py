"""Planning with an action-conditioned world model: costs, action search and the model adapter.

    world = LevelWorldModel(model)            # level 1 of an HJEPA trained with actions
    world.observe(clip)                       # the last frames seen, [1, C, T, H, W]
    goal = world.encode_goal(goal_clip)       # [Q, D] where the agent should end up
    plan = CEM(Discrete(7), length=8).plan(lambda a: representation_cost(world.imagine(a), goal))
    env.step(plan.actions[0])                 # model-predictive control: act, observe, plan again
"""

from hjepa.planning.cost import representation_cost
from hjepa.planning.search import CEM, MPPI, Box, Discrete, Plan
from hjepa.planning.world_model import LevelWorldModel

__all__ = ["CEM", "MPPI", "Box", "Discrete", "LevelWorldModel", "Plan", "representation_cost"]

"""Reward models: rating store, Bayesian Bradley-Terry, active pair selection, judges, simulated
rater, the reward model (regression on latent scores, or the pairwise baseline), and named recipes
for making one from simulated ratings (`_recipes`)."""

from ._active import STRATEGIES, next_pairs
from ._bradley_terry import Scores, fit, win_probability
from ._judges import JudgeConfig, abc_body, auto_compare, auto_winner, broken_reasons, compression_ratio
from ._model import ANNOTATIONS, BAR_POOLINGS, POOLINGS, RewardModel, bar_pool, bar_token_ids, pool_annotations, token_texts
from ._ensemble import DEFAULT_MEMBERS, RewardEnsemble, bootstrap_heads, fit_ensemble, load_reward_model
from ._recipes import (
    BASELINE,
    PRACTICAL,
    PRACTICAL_ATTENTION,
    PRACTICAL_MUSIC,
    PRACTICAL_BAR_AWARE,
    PRACTICAL_ENDING,
    RECIPES,
    RatingPool,
    Recipe,
    fit_model,
    fit_recipe,
    make_pool,
    root_groups,
    scale_recipe,
    simulate_comparisons,
    train_recipe,
)
from ._raters import VERDICTS, JudgeRater, Rater, judge_pairs
from ._simulated import FLOOR, INVALID, TIE_RATE, SimulatedRater, checked_utility, music_features, text_key, unclipped_utility
from ._train import (
    RewardTrainConfig,
    bradley_terry_loss,
    bt_regression_loss,
    fit_attention_query,
    fit_head,
    fit_pairwise_head,
    group_folds,
    pairwise_logistic,
    train_pairwise,
    train_reward_model,
)
from ._formats import (
    export_index_pairs,
    export_openai,
    export_trl,
    import_index_pairs,
    import_openai,
    import_trl,
    split_prefix,
)
from ._workflow import (
    fit_store,
    load_scores,
    propose_pairs,
    rate_pairs,
    save_scores,
    train_from_store,
    training_rows,
)
from ._jsonl import StoreError, read_jsonl
from ._records import KINDS, ORIGINS, Comparison, Item, QueueEntry, Skip, item_id
from ._store import RatingStore
from ._session import SESSION_VERDICTS, RatingPair, RatingSession, check_rater, split_pair_id

__all__ = [
    "STRATEGIES", "next_pairs", "VERDICTS", "JudgeRater", "Rater", "judge_pairs", "Scores", "fit", "win_probability", "export_index_pairs",
    "export_openai", "export_trl", "import_index_pairs", "import_openai", "import_trl",
    "split_prefix", "KINDS", "ORIGINS", "Comparison", "Item", "QueueEntry", "RatingStore", "Skip", "StoreError",
    "SESSION_VERDICTS", "RatingPair", "RatingSession", "check_rater", "split_pair_id",
    "item_id", "read_jsonl", "POOLINGS", "BAR_POOLINGS", "ANNOTATIONS", "bar_pool", "bar_token_ids", "pool_annotations", "token_texts", "RewardModel", "RewardEnsemble", "DEFAULT_MEMBERS", "bootstrap_heads", "fit_ensemble", "load_reward_model", "RewardTrainConfig", "bradley_terry_loss", "bt_regression_loss", "fit_attention_query", "fit_head", "fit_pairwise_head", "pairwise_logistic",
    "group_folds", "train_pairwise", "train_reward_model", "JudgeConfig", "abc_body", "auto_compare", "auto_winner",
    "broken_reasons", "compression_ratio", "FLOOR", "INVALID", "TIE_RATE", "SimulatedRater", "checked_utility", "music_features", "text_key", "unclipped_utility",
    "fit_store", "load_scores", "propose_pairs", "rate_pairs", "save_scores", "train_from_store",
    "training_rows", "BASELINE", "PRACTICAL", "PRACTICAL_BAR_AWARE", "PRACTICAL_ENDING", "PRACTICAL_ATTENTION", "PRACTICAL_MUSIC",
    "RECIPES", "RatingPool", "Recipe", "fit_model", "fit_recipe", "make_pool", "root_groups", "scale_recipe",
    "simulate_comparisons", "train_recipe",
]


from domains._deprecation import deprecated_aliases

# rewardmodels.TrainConfig was the reward model's config before the generator's got a name of its
# own (domains.GeneratorTrainConfig); kept for scripts outside the repository, unused inside it.
__getattr__ = deprecated_aliases(__name__, {"TrainConfig": ("RewardTrainConfig", RewardTrainConfig)})

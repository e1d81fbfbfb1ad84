"""StackRec: deep sequential recommenders trained fast by progressive stacking (arXiv 2012.07598)."""

"""Basket analysis: frequent itemsets, association rules, cross-sell and up-sell insights."""

"""Word attributions: one text (`explainer`: `lime`, `ig`), corpus-level aggregation (`corpus`, `store`),
HTML (`html`)."""

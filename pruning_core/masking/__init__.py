"""Masks made: which weights are prunable, criteria, schedules, allocation, selection, the
engine. Never imports training or the experiment."""

"""Rollout plans: a route moved step by step to async, judged on the whole fleet's traffic.

plans          what a plan is: its steps, their durations and evidence, the analysis
evidence       the fleet's counts over a step, read from every worker's flushed samples
analysis       pass, fail or inconclusive, and why
store          plans and their events in PostgreSQL; every action in one transaction
lease          which worker drives the plans: a lease row, fenced by its epoch
driver         the loop every worker runs: flush samples, follow plans, drive them if leader
notifications  events to webhooks, delivered by the lease holder
"""

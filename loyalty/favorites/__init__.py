"""Favorite products: a marketer's offer (loyalty.models.FavoriteProductsOffer), each member's
candidate list and picks, the member's API and account page, and the staff API the loyalty
engine reads the picks from to give the benefit.

Candidate lists are computed for one member when asked for, in one query for all the offers
the member sees (selectors.favorite_candidates); nothing is precomputed for the million
members, most of whom never open the page.
"""

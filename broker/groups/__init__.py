"""backbone.broker.groups"""

"""backbone.broker.log"""

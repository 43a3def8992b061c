"""Local tools: what runs the project on one machine, never a deployed service.

``broker`` (the embedded Tansu broker: `lvp broker`), ``localdb`` (DynamoDB Local / moto server),
``stack`` (`lvp up`, `lvp tracker-site`), ``tracker_site`` (the demo player page) and
``simulate`` (`lvp simulate`, synthetic viewers). The shared contracts stay in :mod:`lvp`.
"""

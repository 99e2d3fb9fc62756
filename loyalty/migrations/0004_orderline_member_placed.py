from django.db import migrations, models
import django.db.models.deletion

# Existing lines take their order's member and time; the statement is the same on PostgreSQL
# and SQLite (the demo).
BACKFILL = """
UPDATE loyalty_orderline SET
    member_id = (SELECT o.member_id FROM loyalty_order o WHERE o.id = loyalty_orderline.order_id),
    placed_at = (SELECT o.placed_at FROM loyalty_order o WHERE o.id = loyalty_orderline.order_id)
"""


class Migration(migrations.Migration):

    dependencies = [
        ('loyalty', '0003_order_member_index_total'),
        ('members', '0003_consent_event_partial_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='orderline',
            name='member',
            field=models.ForeignKey(db_index=False, editable=False, null=True,
                                    on_delete=django.db.models.deletion.CASCADE,
                                    related_name='+', to='members.member'),
        ),
        migrations.AddField(
            model_name='orderline',
            name='placed_at',
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name='orderline',
            name='member',
            field=models.ForeignKey(db_index=False, editable=False,
                                    on_delete=django.db.models.deletion.CASCADE,
                                    related_name='+', to='members.member'),
        ),
        migrations.AlterField(
            model_name='orderline',
            name='placed_at',
            field=models.DateTimeField(editable=False),
        ),
        migrations.AddIndex(
            model_name='orderline',
            index=models.Index(fields=['member', 'placed_at'], include=('product',),
                               name='orderline_member_placed_idx'),
        ),
    ]
